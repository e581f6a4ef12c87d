-- Fills customer_key for the rows written before release 2, in batches of 1000 by id, committing
-- each batch (short row locks, the app's writes go on) and pausing between them. It stops at the
-- greatest id it saw at the start: rows after that come from release 2, which writes the key.
-- Runs outside Flyway's transaction (see the .conf beside it) so that COMMIT in the DO block is
-- allowed; a rerun after a failure skips the rows already filled.
DO $$
DECLARE
    last_id bigint := (SELECT max(id) FROM orders);
    done_upto bigint := 0;
    batch_end bigint;
BEGIN
    WHILE done_upto < last_id LOOP
        batch_end := least(done_upto + 1000, last_id);
        UPDATE orders SET customer_key = lower(customer)
         WHERE id > done_upto AND id <= batch_end AND customer_key IS NULL;
        done_upto := batch_end;
        COMMIT;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
