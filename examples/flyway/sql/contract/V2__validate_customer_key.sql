-- Checks the existing rows while the app keeps reading and writing (SHARE UPDATE EXCLUSIVE).
ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_key_present;
