"""CodeDeploy lifecycle hooks: prove a new version works before it gets any traffic."""
