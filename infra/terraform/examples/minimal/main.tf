# Minimal root module: one bucket, the two roles, the notification topic.
#
#   cp terraform.tfvars.example terraform.tfvars   # then edit it
#   terraform init && terraform apply

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  region = var.region
}

# Second region for the optional replica; unused while replication_enabled is false.
provider "aws" {
  alias  = "replica"
  region = var.replica_region
}

module "s3backup" {
  source = "../.."

  providers = {
    aws         = aws
    aws.replica = aws.replica
  }

  bucket_name         = var.bucket_name
  github_repository   = var.github_repository
  notification_emails = var.notification_emails

  replication_enabled = var.replica_bucket_name != null
  replica_bucket_name = var.replica_bucket_name
}
