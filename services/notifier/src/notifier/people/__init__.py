"""People: who a lead is to the notifier (contact, consent per category, stage, activities),
fed by lead events; sealed personal data waits here until its data key is fetched."""
