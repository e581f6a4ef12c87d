-- Release 1: the customers table the first version of the app uses.
CREATE TABLE customers (
    id         bigserial PRIMARY KEY,
    full_name  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
