variable "region" {
  description = "AWS region of the repository bucket."
  type        = string
  default     = "eu-west-1"
}

variable "replica_region" {
  description = "AWS region of the replica bucket (used only when replica_bucket_name is set)."
  type        = string
  default     = "eu-central-1"
}

variable "bucket_name" {
  description = "Globally unique name of the repository bucket."
  type        = string
}

variable "github_repository" {
  description = "GitHub repository (OWNER/REPO) allowed to assume the roles from its main branch."
  type        = string
}

variable "notification_emails" {
  description = "E-mail addresses that receive backup notifications."
  type        = list(string)
  default     = []
}

variable "replica_bucket_name" {
  description = "Name of a replica bucket in replica_region; null disables replication."
  type        = string
  default     = null
}
