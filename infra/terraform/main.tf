data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  # "" for the bucket root, otherwise "some/prefix/".
  repo_prefix      = trim(var.repository_prefix, "/") == "" ? "" : "${trim(var.repository_prefix, "/")}/"
  archives_prefix  = "${local.repo_prefix}archives/"
  snapshots_prefix = "${local.repo_prefix}snapshots/"
  entries_prefix   = "${local.repo_prefix}entries/"
  locks_prefix     = "${local.repo_prefix}locks/"
  history_prefix   = "${local.repo_prefix}history/"
  inventory_prefix = "${trim(var.inventory_prefix, "/")}/"
  kms_enabled      = var.kms_key_arn != null
  account_id       = data.aws_caller_identity.current.account_id
  partition        = data.aws_partition.current.partition
}

# ---------------------------------------------------------------------------- bucket

resource "aws_s3_bucket" "this" {
  bucket              = var.bucket_name
  force_destroy       = var.force_destroy
  object_lock_enabled = var.object_lock_enabled
  tags                = var.tags
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.kms_enabled ? "aws:kms" : "AES256"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = local.kms_enabled
  }
}

# ---------------------------------------------------------------------------- bucket policy

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

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

  statement {
    sid       = "DenyOutdatedTLS"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }

  dynamic "statement" {
    for_each = var.inventory_enabled ? [1] : []

    content {
      sid       = "AllowInventoryDelivery"
      effect    = "Allow"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.this.arn}/${local.inventory_prefix}*"]

      principals {
        type        = "Service"
        identifiers = ["s3.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }

      condition {
        test     = "ArnLike"
        variable = "aws:SourceArn"
        values   = [aws_s3_bucket.this.arn]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.bucket.json

  # S3 rejects bucket policies while the public access block is being written.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# ---------------------------------------------------------------------------- lifecycle

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  # Only archives/ (pack data) tiers to colder classes and expires: config.json,
  # snapshots/ (manifests) and entries/ (their entry segments) stay in S3 Standard, where
  # `list`, `ls` and `restore` read them.
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

  # Whole bucket: no storage-class change, only clean-up of old versions and failed uploads.
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

  dynamic "rule" {
    for_each = var.inventory_enabled ? [local.inventory_prefix] : []

    content {
      id     = "inventory-expiry"
      status = "Enabled"

      filter {
        prefix = rule.value
      }

      expiration {
        days = var.inventory_retention_days
      }
    }
  }

  # Noncurrent-version rules need versioning to be on first.
  depends_on = [aws_s3_bucket_versioning.this]

  lifecycle {
    precondition {
      condition     = var.glacier_transition_days >= var.ia_transition_days + 30
      error_message = "glacier_transition_days must be at least ia_transition_days + 30 (objects stay 30 days in STANDARD_IA)."
    }

    precondition {
      condition     = var.archive_expiration_days == null || try(var.archive_expiration_days > var.glacier_transition_days, false)
      error_message = "archive_expiration_days must be greater than glacier_transition_days (or null)."
    }
  }
}

# ---------------------------------------------------------------------------- object lock

resource "aws_s3_bucket_object_lock_configuration" "this" {
  count  = var.object_lock_enabled ? 1 : 0
  bucket = aws_s3_bucket.this.id

  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.object_lock_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

# ---------------------------------------------------------------------------- inventory

resource "aws_s3_bucket_inventory" "this" {
  count                    = var.inventory_enabled ? 1 : 0
  bucket                   = aws_s3_bucket.this.id
  name                     = "${var.name_prefix}-repository"
  included_object_versions = "Current"
  optional_fields          = ["Size", "LastModifiedDate", "StorageClass", "ETag"]

  schedule {
    frequency = var.inventory_frequency
  }

  dynamic "filter" {
    for_each = local.repo_prefix == "" ? [] : [local.repo_prefix]

    content {
      prefix = filter.value
    }
  }

  destination {
    bucket {
      format     = "CSV"
      bucket_arn = aws_s3_bucket.this.arn
      account_id = local.account_id
      prefix     = trim(local.inventory_prefix, "/")
    }
  }

  depends_on = [aws_s3_bucket_policy.this]
}
