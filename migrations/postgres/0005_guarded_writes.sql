-- A write of a shipment is guarded by the revision its writer read: a row changed since is not
-- written. This fails the statement that calls it (and so its transaction) when a guarded
-- write found fewer rows than it expected, with SQLSTATE 40001, the code PostgreSQL gives a
-- transaction that lost a race: the writer reads again and retries.
CREATE FUNCTION shipping_expect_rows(expected BIGINT, actual BIGINT, what TEXT)
RETURNS BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    IF actual <> expected THEN
        RAISE EXCEPTION '%: % of % rows written', what, actual, expected
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN actual;
END
$$;
