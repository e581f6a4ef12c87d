-- Background: sample data, written while the app already serves.
INSERT INTO customers (full_name)
SELECT 'Customer ' || n FROM generate_series(1, 20000) AS n;
