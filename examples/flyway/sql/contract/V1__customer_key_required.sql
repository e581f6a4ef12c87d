-- After release 2 runs everywhere (every row written with a key, the backfill done): require it.
-- NOT VALID first (a short lock, no scan); the scan runs in V2 under a weaker lock.
SET lock_timeout = '5s';
ALTER TABLE orders ADD CONSTRAINT orders_customer_key_present CHECK (customer_key IS NOT NULL) NOT VALID;
