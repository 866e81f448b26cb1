# Stage 'train': rules are added by its issue.
