# ---------------------------------------------------------------------------- naming

variable "name_prefix" {
  description = "Prefix for the names of the IAM roles, the SNS topic and the inventory configuration."
  type        = string
  default     = "s3backup"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,40}$", var.name_prefix))
    error_message = "name_prefix must be 1-40 characters allowed in IAM role names."
  }
}

variable "tags" {
  description = "Tags added to every taggable resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------- bucket

variable "bucket_name" {
  description = "Name of the S3 bucket holding the repository (BUCKET_NAME for s3backup)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)."
  }
}

variable "repository_prefix" {
  description = "Key prefix of the repository inside the bucket (s3://BUCKET/PREFIX); empty for the bucket root. IAM and lifecycle rules are scoped to it."
  type        = string
  default     = ""

  validation {
    condition     = !startswith(var.repository_prefix, "/") && !strcontains(var.repository_prefix, "//") && !strcontains(var.repository_prefix, "*")
    error_message = "repository_prefix must not start with '/', contain '//' or contain '*'."
  }
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete non-empty buckets (and every backup in them)."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "ARN of a KMS key for default encryption (SSE-KMS). null uses SSE-S3 (AES256)."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be null or a KMS key ARN."
  }
}

# ---------------------------------------------------------------------------- lifecycle (archives/ only)

variable "ia_transition_days" {
  description = "Days after upload when objects under archives/ move to STANDARD_IA (S3 minimum: 30)."
  type        = number
  default     = 30

  validation {
    condition     = var.ia_transition_days >= 30 && floor(var.ia_transition_days) == var.ia_transition_days
    error_message = "ia_transition_days must be a whole number >= 30."
  }
}

variable "glacier_transition_days" {
  description = "Days after upload when objects under archives/ move to glacier_storage_class (at least ia_transition_days + 30)."
  type        = number
  default     = 90

  validation {
    condition     = var.glacier_transition_days >= 60 && floor(var.glacier_transition_days) == var.glacier_transition_days
    error_message = "glacier_transition_days must be a whole number >= 60."
  }
}

variable "glacier_storage_class" {
  description = "Storage class for the second transition of archives/: GLACIER (Flexible Retrieval), GLACIER_IR or DEEP_ARCHIVE."
  type        = string
  default     = "GLACIER"

  validation {
    condition     = contains(["GLACIER", "GLACIER_IR", "DEEP_ARCHIVE"], var.glacier_storage_class)
    error_message = "glacier_storage_class must be GLACIER, GLACIER_IR or DEEP_ARCHIVE."
  }
}

variable "archive_expiration_days" {
  description = "Days after upload when objects under archives/ expire; null disables expiry. Incremental snapshots keep referring to archives written by earlier backups, so this must exceed the age of the oldest archive any kept snapshot still needs."
  type        = number
  default     = 365

  validation {
    condition     = var.archive_expiration_days == null || try(var.archive_expiration_days >= 1, false)
    error_message = "archive_expiration_days must be null or >= 1."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after an object version becomes noncurrent (overwritten or deleted) before it is removed for good."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be >= 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which incomplete multipart uploads are aborted (their parts deleted)."
  type        = number
  default     = 7

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1
    error_message = "abort_incomplete_multipart_upload_days must be >= 1."
  }
}

# ---------------------------------------------------------------------------- object lock

variable "object_lock_enabled" {
  description = "Enable S3 Object Lock (WORM) with a default retention. Can only be turned on when the bucket is created."
  type        = bool
  default     = false
}

variable "object_lock_mode" {
  description = "Default Object Lock retention mode: GOVERNANCE (privileged users may override) or COMPLIANCE (nobody can)."
  type        = string
  default     = "GOVERNANCE"

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.object_lock_mode)
    error_message = "object_lock_mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "object_lock_days" {
  description = "Default Object Lock retention in days for every new object version."
  type        = number
  default     = 30

  validation {
    condition     = var.object_lock_days >= 1
    error_message = "object_lock_days must be >= 1."
  }
}

# ---------------------------------------------------------------------------- replication

variable "replication_enabled" {
  description = "Replicate the bucket to replica_bucket_name in the region of the `aws.replica` provider."
  type        = bool
  default     = false
}

variable "replica_bucket_name" {
  description = "Name of the replica bucket created in the second region (required when replication_enabled)."
  type        = string
  default     = null
}

variable "replica_kms_key_arn" {
  description = "KMS key ARN in the replica region for SSE-KMS on the replica; required when kms_key_arn is set and replication is on. null uses SSE-S3."
  type        = string
  default     = null

  validation {
    condition     = var.replica_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.replica_kms_key_arn))
    error_message = "replica_kms_key_arn must be null or a KMS key ARN."
  }
}

variable "replica_storage_class" {
  description = "Storage class of replicated objects (the replica applies the same archives/ lifecycle afterwards)."
  type        = string
  default     = "STANDARD"

  validation {
    condition     = contains(["STANDARD", "STANDARD_IA", "INTELLIGENT_TIERING", "ONEZONE_IA", "GLACIER_IR"], var.replica_storage_class)
    error_message = "replica_storage_class must be STANDARD, STANDARD_IA, INTELLIGENT_TIERING, ONEZONE_IA or GLACIER_IR."
  }
}

variable "replicate_delete_markers" {
  description = "Replicate delete markers (rotation deletes) to the replica. false keeps deleted snapshots in the replica until its own lifecycle removes them."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------- inventory (cost analysis)

variable "inventory_enabled" {
  description = "Deliver a daily or weekly S3 Inventory report of the repository into inventory_prefix (read by the cost analyzer)."
  type        = bool
  default     = true
}

variable "inventory_prefix" {
  description = "Key prefix, at the bucket root, that receives S3 Inventory reports; the only prefix the cost analyzer may read objects from."
  type        = string
  default     = "inventory/"

  validation {
    condition     = trim(var.inventory_prefix, "/") != "" && !strcontains(var.inventory_prefix, "*")
    error_message = "inventory_prefix must be a non-empty prefix without '*'."
  }
}

variable "inventory_frequency" {
  description = "How often S3 Inventory reports are produced: Daily or Weekly."
  type        = string
  default     = "Weekly"

  validation {
    condition     = contains(["Daily", "Weekly"], var.inventory_frequency)
    error_message = "inventory_frequency must be Daily or Weekly."
  }
}

variable "inventory_retention_days" {
  description = "Days to keep S3 Inventory reports before they expire."
  type        = number
  default     = 35

  validation {
    condition     = var.inventory_retention_days >= 1
    error_message = "inventory_retention_days must be >= 1."
  }
}

# ---------------------------------------------------------------------------- IAM and GitHub OIDC

variable "github_repository" {
  description = "GitHub repository (OWNER/REPO) whose workflows may assume the roles through OIDC."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must look like OWNER/REPO."
  }
}

variable "github_branch" {
  description = "Only workflows running on this branch may assume the roles (OIDC subject repo:OWNER/REPO:ref:refs/heads/BRANCH)."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]+$", var.github_branch))
    error_message = "github_branch must be a plain branch name (no wildcards)."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub Actions OIDC provider. Set false when the account already has one and pass github_oidc_provider_arn."
  type        = bool
  default     = true
}

variable "github_oidc_provider_arn" {
  description = "ARN of an existing token.actions.githubusercontent.com OIDC provider (used when create_github_oidc_provider is false)."
  type        = string
  default     = null
}

variable "github_oidc_thumbprints" {
  description = "Certificate thumbprints for the GitHub OIDC provider (AWS no longer checks them for GitHub, but older providers require the argument)."
  type        = list(string)
  default     = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]
}

variable "backup_trusted_principal_arns" {
  description = "Extra IAM principals (for example the IAM user of a Docker host) allowed to assume the backup role with sts:AssumeRole."
  type        = list(string)
  default     = []
}

variable "max_session_duration" {
  description = "Maximum session length, in seconds, of the backup and cost-analyzer roles (long backups need long sessions)."
  type        = number
  default     = 21600

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200
    error_message = "max_session_duration must be between 3600 and 43200 seconds."
  }
}

variable "allow_rotation_deletes" {
  description = "Let the backup role delete objects under snapshots/, entries/ and archives/ (needed by snapshot rotation). Never config.json, never object versions."
  type        = bool
  default     = true
}

variable "metrics_namespace" {
  description = "The only CloudWatch namespace the backup role may publish metrics to."
  type        = string
  default     = "S3Backup"

  validation {
    condition     = length(var.metrics_namespace) > 0 && !startswith(var.metrics_namespace, "AWS/")
    error_message = "metrics_namespace must be non-empty and must not start with AWS/."
  }
}

# ---------------------------------------------------------------------------- notifications

variable "notification_emails" {
  description = "E-mail addresses subscribed to the notification topic (each must confirm the subscription mail)."
  type        = list(string)
  default     = []
}

variable "sns_kms_master_key_id" {
  description = "KMS key (ID, ARN or alias) to encrypt the SNS topic at rest; null leaves it unencrypted."
  type        = string
  default     = null
}
