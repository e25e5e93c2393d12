"""Sales tasks ("hot lead: call now"), made by task touches and listed for the sales team."""
