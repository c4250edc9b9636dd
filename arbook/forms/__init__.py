"""Every form of arbook, one module per page family (the floor above selectors, below views):
what a page accepts from the user, and the notices it writes when a value is left out.

- `credentials`: the admin's gateway credential form.
- `espay`: the Espay batch upload and the results page's line filter.
- `aging`: the aging report's options and its use of the invoice list's filters.
- `syncs`: the sync-run list's filters and page cursor.

The invoice list's filters and position (sort, size, cursor) are `arbook.filters` (django-filter).
"""
