-- Background: backfill while release-2 pods roll out; it never holds the gate.
UPDATE customers SET email = lower(replace(full_name, ' ', '.')) || '@example.com' WHERE email IS NULL;
