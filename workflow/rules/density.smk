# Stage 'density': rules are added by its issue.
