//! `FakeEngine`: an in-memory `Engine` that records every call, for the
//! supervisor's and service actors' unit tests.
