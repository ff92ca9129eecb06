# Optional cross-region replication: a replica bucket in the region of the `aws.replica`
# provider, hardened like the primary, and the IAM role S3 uses to copy objects to it.

locals {
  replica_count = var.replication_enabled ? 1 : 0
}

resource "aws_s3_bucket" "replica" {
  provider = aws.replica
  count    = local.replica_count

  bucket              = var.replica_bucket_name
  force_destroy       = var.force_destroy
  object_lock_enabled = var.object_lock_enabled
  tags                = var.tags

  lifecycle {
    precondition {
      condition     = var.replica_bucket_name != null
      error_message = "replica_bucket_name is required when replication_enabled is true."
    }
  }
}

resource "aws_s3_bucket_ownership_controls" "replica" {
  provider = aws.replica
  count    = local.replica_count
  bucket   = aws_s3_bucket.replica[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "replica" {
  provider                = aws.replica
  count                   = local.replica_count
  bucket                  = aws_s3_bucket.replica[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "replica" {
  provider = aws.replica
  count    = local.replica_count
  bucket   = aws_s3_bucket.replica[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "replica" {
  provider = aws.replica
  count    = local.replica_count
  bucket   = aws_s3_bucket.replica[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.replica_kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.replica_kms_key_arn
    }
    bucket_key_enabled = var.replica_kms_key_arn != null
  }
}

data "aws_iam_policy_document" "replica_bucket" {
  count = local.replica_count

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.replica[0].arn, "${aws_s3_bucket.replica[0].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "replica" {
  provider = aws.replica
  count    = local.replica_count
  bucket   = aws_s3_bucket.replica[0].id
  policy   = data.aws_iam_policy_document.replica_bucket[0].json

  depends_on = [aws_s3_bucket_public_access_block.replica]
}

resource "aws_s3_bucket_lifecycle_configuration" "replica" {
  provider = aws.replica
  count    = local.replica_count
  bucket   = aws_s3_bucket.replica[0].id

  # Same rule as the primary: only archives/ tiers and expires.
  rule {
    id     = "archives-tiering"
    status = "Enabled"

    filter {
      prefix = local.archives_prefix
    }

    transition {
      days          = var.ia_transition_days
      storage_class = "STANDARD_IA"
    }

    transition {
      days          = var.glacier_transition_days
      storage_class = var.glacier_storage_class
    }

    dynamic "expiration" {
      for_each = var.archive_expiration_days == null ? [] : [var.archive_expiration_days]

      content {
        days = expiration.value
      }
    }
  }

  rule {
    id     = "housekeeping"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.replica]
}

resource "aws_s3_bucket_object_lock_configuration" "replica" {
  provider = aws.replica
  count    = var.replication_enabled && var.object_lock_enabled ? 1 : 0
  bucket   = aws_s3_bucket.replica[0].id

  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.object_lock_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.replica]
}

# ---------------------------------------------------------------------------- replication role

data "aws_iam_policy_document" "replication_trust" {
  count = local.replica_count

  statement {
    sid     = "S3Replication"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "replication" {
  count = local.replica_count

  statement {
    sid       = "ReadReplicationConfiguration"
    effect    = "Allow"
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]
  }

  statement {
    sid    = "ReadSourceVersions"
    effect = "Allow"
    actions = [
      "s3:GetObjectVersionForReplication",
      "s3:GetObjectVersionAcl",
      "s3:GetObjectVersionTagging",
      "s3:GetObjectRetention",
      "s3:GetObjectLegalHold",
    ]
    resources = ["${aws_s3_bucket.this.arn}/*"]
  }

  statement {
    sid       = "WriteReplica"
    effect    = "Allow"
    actions   = ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]
    resources = ["${aws_s3_bucket.replica[0].arn}/*"]
  }

  dynamic "statement" {
    for_each = local.kms_enabled ? [1] : []

    content {
      sid       = "DecryptSource"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }

  dynamic "statement" {
    for_each = var.replica_kms_key_arn == null ? [] : [1]

    content {
      sid       = "EncryptReplica"
      effect    = "Allow"
      actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
      resources = [var.replica_kms_key_arn]
    }
  }
}

resource "aws_iam_role" "replication" {
  count              = local.replica_count
  name               = "${var.name_prefix}-replication"
  assume_role_policy = data.aws_iam_policy_document.replication_trust[0].json
  tags               = var.tags
}

resource "aws_iam_role_policy" "replication" {
  count  = local.replica_count
  name   = "${var.name_prefix}-replication"
  role   = aws_iam_role.replication[0].id
  policy = data.aws_iam_policy_document.replication[0].json
}

# ---------------------------------------------------------------------------- replication rule

resource "aws_s3_bucket_replication_configuration" "this" {
  count  = local.replica_count
  role   = aws_iam_role.replication[0].arn
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "replicate-repository"
    status = "Enabled"

    filter {}

    delete_marker_replication {
      status = var.replicate_delete_markers ? "Enabled" : "Disabled"
    }

    dynamic "source_selection_criteria" {
      for_each = local.kms_enabled ? [1] : []

      content {
        sse_kms_encrypted_objects {
          status = "Enabled"
        }
      }
    }

    destination {
      bucket        = aws_s3_bucket.replica[0].arn
      storage_class = var.replica_storage_class

      dynamic "encryption_configuration" {
        for_each = var.replica_kms_key_arn == null ? [] : [var.replica_kms_key_arn]

        content {
          replica_kms_key_id = encryption_configuration.value
        }
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.this, aws_s3_bucket_versioning.replica]

  lifecycle {
    precondition {
      condition     = !local.kms_enabled || var.replica_kms_key_arn != null
      error_message = "replica_kms_key_arn is required to replicate SSE-KMS objects (kms_key_arn is set)."
    }
  }
}
