-- 0017: the shared test clock of a test database (plpgsql/test_clock.sql).
--
-- test_clock_offset: how far the database's shared test clock is ahead of the real one.
-- durable.current_time() adds it to clock_timestamp() for a session whose setting
-- durable.fake_now is 'shared' (the time-skipping test harness, durable.testing, connects
-- with that setting), and only where test_clock marks a test database. Only
-- the test clock verbs (durable.advance_test_clock, durable.skip_test_clock) change it.
alter table durable.settings add column test_clock_offset interval not null default interval '0';
