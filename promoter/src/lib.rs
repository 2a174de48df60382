//! zai-promoter: the canary promotion checklist as an engine.
