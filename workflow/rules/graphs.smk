# Stage 'graphs': rules are added by its issue.
