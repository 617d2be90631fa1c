"""gitlab-aws-oidc-fleet: keyless, least-privilege AWS access for every project of a GitLab group."""
