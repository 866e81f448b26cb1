# Stage 'xrd': rules are added by its issue.
