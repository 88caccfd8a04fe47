-- Applies a batch of deliveries in one transaction and one round trip (the service's group
-- commit): element i of every array describes delivery i. Each delivery gets exactly the
-- answer apply_event would give it alone, in order, so a twin later in the same batch sees
-- the earlier one as a duplicate.
CREATE FUNCTION apply_events(
    p_event_ids TEXT[], p_event_types TEXT[], p_order_ids TEXT[], p_shipment_ids UUID[],
    p_customer_ids TEXT[], p_items TEXT[], p_shipping_addresses TEXT[],
    p_ordered_ats TIMESTAMPTZ[], p_now TIMESTAMPTZ)
RETURNS TABLE (is_first BOOLEAN, outcome TEXT, shipment_id UUID)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_event_ids, 1), 0) LOOP
        RETURN QUERY SELECT * FROM apply_event(
            p_event_ids[i], p_event_types[i], p_order_ids[i], p_shipment_ids[i],
            p_customer_ids[i], p_items[i]::JSONB, p_shipping_addresses[i]::JSONB,
            p_ordered_ats[i], p_now);
    END LOOP;
END
$$;
