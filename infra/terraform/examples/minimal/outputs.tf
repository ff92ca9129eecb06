output "bucket_name" {
  description = "BUCKET_NAME for s3backup."
  value       = module.s3backup.bucket_name
}

output "aws_region" {
  description = "AWS_REGION for s3backup."
  value       = module.s3backup.bucket_region
}

# The module's names, as docs/deploy.md reads them (terraform output -raw bucket_region).
output "bucket_region" {
  description = "Region of the repository bucket (AWS_REGION)."
  value       = module.s3backup.bucket_region
}

output "repository_url" {
  description = "Repository location to pass as `s3backup --repo` (S3BACKUP_REPO)."
  value       = module.s3backup.repository_url
}

output "sns_topic_arn" {
  description = "SNS_TOPIC_ARN for s3backup."
  value       = module.s3backup.sns_topic_arn
}

output "backup_role_arn" {
  description = "GitHub repository variable AWS_BACKUP_ROLE_ARN."
  value       = module.s3backup.backup_role_arn
}

output "cost_analyzer_role_arn" {
  description = "GitHub repository variable AWS_COST_ROLE_ARN."
  value       = module.s3backup.cost_analyzer_role_arn
}

output "replica_bucket_name" {
  description = "Replica bucket, or null."
  value       = module.s3backup.replica_bucket_name
}
