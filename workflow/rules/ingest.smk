# Stage 'ingest': rules are added by its issue.
