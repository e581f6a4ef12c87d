-- The app's table as release 1 shipped it.
SET lock_timeout = '5s';
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
