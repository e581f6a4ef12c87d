-- Release 2, expand: additive only, so release-1 pods keep working.
ALTER TABLE customers ADD COLUMN email text;
