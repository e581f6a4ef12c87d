-- Background: backfill while release-2 pods roll out; it never holds the gate. Batched: short
-- transactions of about `size` rows (adapting toward 150 ms each), resumable, with progress.
-- Release 2 writes email itself; rows release-1 pods add after the walk has passed stay NULL,
-- which release 2 reads as no email.
-- lockgate:batch table=customers key=id size=500 pause=100ms
UPDATE customers SET email = lower(replace(full_name, ' ', '.')) || '@example.com'
 WHERE id >= :start AND id < :end AND email IS NULL;
