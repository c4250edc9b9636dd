"""Services: the business logic that changes things (push); selectors read (pull).

Naming, one rule for every service (issue 15):

- A service is `<entity>_<action>`: `invoices_sync`, `sync_enqueue`, `notification_apply`,
  `espay_batch_confirm`, `secrets_scrub`, `database_check`; the entity is singular when the
  service acts on one thing, plural when on many. Its arguments are keyword-only and typed
  (`invoices_sync(*, credential: GatewayCredential, full: bool = False)`), so a call names what
  it passes and a reordering cannot swap two ids. Helpers private to a module start with `_`;
  pure helpers shared by services are named for what they return (`content_hash`,
  `money_rule_violations`).
- The Celery task that runs a service is `<service>_task` (`invoices_sync_task` in
  `arbook/tasks/`), registered as `arbook.<service>` (`arbook.invoices_sync`). The service
  module that enqueues it declares that name once (`SYNC_TASK`, `APPLY_TASK`, `SEND_TASK`), the
  task takes it from there, and services enqueue by it with `arbook.celery.enqueue`: they never
  import `arbook.tasks` (which imports them).

The modules, lowest floor first (each imports only those above it in this list):

- `credentials` (a credential's gateway client, scrubbing its secrets out of texts, Test
  connection) and `health` (the health checks): no other service.
- `sync_schedule`: when syncs run (on request, on the scheduler's tick), enqueued by name.
- `invoice_write`: the write path. Every change of an invoice's state goes through it: a
  provider's read, an upload, a notification (with its live re-check); the upsert (through
  `arbook.bulk`), change detection, events, the money rules, settling waiting notifications.
- `sync` (the sync engine), `notifications` (receiving webhooks), `espay_batch` (the Espay
  upload): the callers of the write path; beside them `espay_files` (reading and writing the
  upload's spreadsheets) and `exports` (CSV and XLSX out).
"""
