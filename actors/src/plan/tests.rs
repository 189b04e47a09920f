//! Tests of the plan's own logic.
