"""Settings profiles: `development` (the default) and `production`."""
