-- Contract: release 2 no longer reads created_at. Runs only after every pod needs schema 2.
ALTER TABLE customers DROP COLUMN created_at;
