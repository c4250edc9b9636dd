"""Services: the business logic that changes things (push)."""
