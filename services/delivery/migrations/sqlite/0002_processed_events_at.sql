-- The relay deletes dedupe rows by age (storefront_kit::outbox::Relay::purge).
CREATE INDEX processed_events_at ON processed_events (processed_at);
