-- The lookup index, built without blocking the app's writes. A failed CONCURRENTLY build leaves
-- an INVALID index behind: dropping it first makes the script safe to rerun.
DROP INDEX CONCURRENTLY IF EXISTS orders_customer_key_idx;
CREATE INDEX CONCURRENTLY orders_customer_key_idx ON orders (customer_key);
