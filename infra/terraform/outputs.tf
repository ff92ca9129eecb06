output "bucket_name" {
  description = "Name of the repository bucket (BUCKET_NAME)."
  value       = aws_s3_bucket.this.bucket
}

output "bucket_arn" {
  description = "ARN of the repository bucket."
  value       = aws_s3_bucket.this.arn
}

output "bucket_region" {
  description = "Region of the repository bucket (AWS_REGION)."
  value       = aws_s3_bucket.this.region
}

output "repository_url" {
  description = "Repository location to pass as `s3backup --repo`."
  value       = "s3://${aws_s3_bucket.this.bucket}${local.repo_prefix == "" ? "" : "/${trim(local.repo_prefix, "/")}"}"
}

output "sns_topic_arn" {
  description = "ARN of the notification topic (SNS_TOPIC_ARN)."
  value       = aws_sns_topic.this.arn
}

output "backup_role_arn" {
  description = "ARN of the backup role (GitHub variable AWS_BACKUP_ROLE_ARN)."
  value       = aws_iam_role.backup.arn
}

output "cost_analyzer_role_arn" {
  description = "ARN of the cost-analyzer role (GitHub variable AWS_COST_ROLE_ARN)."
  value       = aws_iam_role.cost_analyzer.arn
}

output "github_oidc_provider_arn" {
  description = "ARN of the GitHub Actions OIDC provider the roles trust."
  value       = local.github_oidc_provider_arn
}

output "replica_bucket_name" {
  description = "Name of the replica bucket, or null when replication is off."
  value       = one(aws_s3_bucket.replica[*].bucket)
}

output "replica_bucket_arn" {
  description = "ARN of the replica bucket, or null when replication is off."
  value       = one(aws_s3_bucket.replica[*].arn)
}

output "replica_bucket_region" {
  description = "Region of the replica bucket, or null when replication is off."
  value       = one(aws_s3_bucket.replica[*].region)
}

output "replication_role_arn" {
  description = "ARN of the role S3 uses to replicate, or null when replication is off."
  value       = one(aws_iam_role.replication[*].arn)
}
