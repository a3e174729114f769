"""Connected calendars: the provider interface, providers, the sync engine, recurrence."""
