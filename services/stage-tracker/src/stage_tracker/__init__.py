"""stage-tracker: owns every lead's current funnel stage and its full history."""
