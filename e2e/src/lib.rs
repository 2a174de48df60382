//! zai-e2e: the test harness.
