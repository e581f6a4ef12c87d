-- Release 2 looks orders up by a normalised customer key. Expand only adds the nullable column
-- (instant: no table rewrite); the new app writes it, the background phase fills in old rows.
SET lock_timeout = '5s';
ALTER TABLE orders ADD COLUMN customer_key text;
