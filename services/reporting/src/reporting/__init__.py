"""reporting: live conversion views, pre-aggregated, replayable from the topics."""
