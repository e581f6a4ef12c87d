-- A script that fails (the column exists since expand's V2): the docs' failure walk-through and the
-- tests add this location to the expand command (-locations=filesystem:sql/expand,filesystem:sql/broken).
ALTER TABLE orders ADD COLUMN customer_key text;
