# Least-privilege roles for the backup job and the cost analyzer, assumable from GitHub
# Actions through OIDC (no stored keys), only by workflows of one repository on one branch.
# What each role may run is in docs/deploy.md ("What each role may do");
# test/infra-iam-enforced.test.ts runs those commands on Ceph RGW under exactly these policies.

locals {
  github_oidc_provider_arn = var.create_github_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : var.github_oidc_provider_arn
  github_subject           = "repo:${var.github_repository}:ref:refs/heads/${var.github_branch}"
}

resource "aws_iam_openid_connect_provider" "github" {
  count           = var.create_github_oidc_provider ? 1 : 0
  url             = "https://token.actions.githubusercontent.com"
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = var.github_oidc_thumbprints
  tags            = var.tags
}

# ---------------------------------------------------------------------------- trust policies

data "aws_iam_policy_document" "backup_trust" {
  statement {
    sid     = "GitHubActionsOIDC"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = [local.github_subject]
    }
  }

  dynamic "statement" {
    for_each = length(var.backup_trusted_principal_arns) > 0 ? [1] : []

    content {
      sid     = "TrustedHosts"
      effect  = "Allow"
      actions = ["sts:AssumeRole"]

      principals {
        type        = "AWS"
        identifiers = var.backup_trusted_principal_arns
      }
    }
  }
}

data "aws_iam_policy_document" "cost_analyzer_trust" {
  statement {
    sid     = "GitHubActionsOIDC"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = [local.github_subject]
    }
  }
}

# ---------------------------------------------------------------------------- backup role

data "aws_iam_policy_document" "backup" {
  # Not limited by an s3:prefix condition: s3backup's start-up probe is a HeadBucket, which
  # needs s3:ListBucket and carries no prefix. Listing reveals key names only.
  statement {
    sid       = "ListRepository"
    effect    = "Allow"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.this.arn]
  }

  # Multipart uploads (archives) need only s3:PutObject, and s3:AbortMultipartUpload for a failed
  # one or, in prune, one a killed run left behind. s3backup never lists the parts of an upload.
  statement {
    sid    = "ReadWriteRepository"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:AbortMultipartUpload",
    ]
    resources = ["${aws_s3_bucket.this.arn}/${local.repo_prefix}*"]
  }

  # Restoring archives that lifecycle moved to Glacier needs a temporary copy first.
  statement {
    sid       = "RestoreArchives"
    effect    = "Allow"
    actions   = ["s3:RestoreObject"]
    resources = ["${aws_s3_bucket.this.arn}/${local.archives_prefix}*"]
  }

  # What every run deletes, whatever the rotation setting: the start-up probe (PREFIX/.probe-<random>,
  # written and deleted again); its own lock when it is done (locks/<id>.json), and stale locks
  # of killed runs (s3backup unlock); and the run records and segments that history compaction
  # merged into a new segment (every 50 runs). None of these objects holds backup data.
  statement {
    sid    = "DeleteRunObjects"
    effect = "Allow"
    actions = [
      "s3:DeleteObject",
    ]
    resources = [
      "${aws_s3_bucket.this.arn}/${local.repo_prefix}.probe-*",
      "${aws_s3_bucket.this.arn}/${local.locks_prefix}*",
      "${aws_s3_bucket.this.arn}/${local.history_prefix}runs/*",
      "${aws_s3_bucket.this.arn}/${local.history_prefix}segments/*",
    ]
  }

  # Snapshot rotation (forget and prune, also the retention policy a backup applies afterwards,
  # default keep-last 5): manifests and unreferenced archives. Without it the backup role cannot
  # rotate, and a backup's retention step is a warning (exit 3) naming this permission. Never
  # config.json or keys/, and never s3:DeleteObjectVersion: with versioning on, a delete only
  # adds a delete marker, so deleted data stays recoverable for
  # noncurrent_version_expiration_days even if the backup credentials leak.
  dynamic "statement" {
    for_each = var.allow_rotation_deletes ? [1] : []

    content {
      sid     = "RotateSnapshots"
      effect  = "Allow"
      actions = ["s3:DeleteObject"]
      resources = [
        "${aws_s3_bucket.this.arn}/${local.snapshots_prefix}*",
        "${aws_s3_bucket.this.arn}/${local.entries_prefix}*",
        "${aws_s3_bucket.this.arn}/${local.archives_prefix}*",
      ]
    }
  }

  dynamic "statement" {
    for_each = local.kms_enabled ? [1] : []

    content {
      sid       = "UseRepositoryKey"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }

  statement {
    sid       = "PublishNotifications"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.this.arn]
  }

  # PutMetricData has no resource-level permissions: Resource must be "*", and the
  # namespace condition is what limits it.
  statement {
    sid       = "PublishMetrics"
    effect    = "Allow"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }
}

resource "aws_iam_role" "backup" {
  name                 = "${var.name_prefix}-backup"
  description          = "s3backup: back up to, restore from and verify s3://${var.bucket_name}/${local.repo_prefix}"
  assume_role_policy   = data.aws_iam_policy_document.backup_trust.json
  max_session_duration = var.max_session_duration
  tags                 = var.tags

  lifecycle {
    precondition {
      condition     = var.create_github_oidc_provider || var.github_oidc_provider_arn != null
      error_message = "Set github_oidc_provider_arn when create_github_oidc_provider is false."
    }
  }
}

resource "aws_iam_role_policy" "backup" {
  name   = "${var.name_prefix}-backup"
  role   = aws_iam_role.backup.id
  policy = data.aws_iam_policy_document.backup.json
}

# ---------------------------------------------------------------------------- cost-analyzer role

data "aws_iam_policy_document" "cost_analyzer" {
  statement {
    sid       = "ListRepository"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]

    dynamic "condition" {
      for_each = local.repo_prefix == "" ? [] : [1]

      content {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["${local.repo_prefix}*", "${local.inventory_prefix}*"]
      }
    }
  }

  statement {
    sid       = "ReadLifecycle"
    effect    = "Allow"
    actions   = ["s3:GetLifecycleConfiguration"]
    resources = [aws_s3_bucket.this.arn]
  }

  # Read-only monitoring (list, history, anomalies, the dashboard; cost reads manifests too):
  # the repository's metadata, never its data (archives/) and never its locks. keys/ holds the
  # passphrase-sealed key files an encrypted repository (s3backup init --encrypt) is opened with.
  statement {
    sid    = "ReadRepositoryMetadata"
    effect = "Allow"
    actions = [
      "s3:GetObject",
    ]
    resources = [
      "${aws_s3_bucket.this.arn}/${local.repo_prefix}config.json",
      "${aws_s3_bucket.this.arn}/${local.repo_prefix}keys/*",
      "${aws_s3_bucket.this.arn}/${local.snapshots_prefix}*",
      # The manifests' entries (the dashboard's file tree), as the manifests themselves.
      "${aws_s3_bucket.this.arn}/${local.entries_prefix}*",
      "${aws_s3_bucket.this.arn}/${local.history_prefix}*",
    ]
  }

  statement {
    sid       = "ReadInventory"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.this.arn}/${local.inventory_prefix}*"]
  }

  dynamic "statement" {
    for_each = local.kms_enabled ? [1] : []

    content {
      sid       = "DecryptInventory"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }
}

resource "aws_iam_role" "cost_analyzer" {
  name                 = "${var.name_prefix}-cost-analyzer"
  description          = "s3backup: read-only cost analysis and monitoring of s3://${var.bucket_name}"
  assume_role_policy   = data.aws_iam_policy_document.cost_analyzer_trust.json
  max_session_duration = var.max_session_duration
  tags                 = var.tags
}

resource "aws_iam_role_policy" "cost_analyzer" {
  name   = "${var.name_prefix}-cost-analyzer"
  role   = aws_iam_role.cost_analyzer.id
  policy = data.aws_iam_policy_document.cost_analyzer.json
}
