-- The W3C trace context of the request that made a change, kept with its announcement: every
-- attempt to deliver it continues that trace (traceparent and tracestate headers).
ALTER TABLE outbox_events ADD COLUMN traceparent TEXT;
ALTER TABLE outbox_events ADD COLUMN tracestate TEXT;
