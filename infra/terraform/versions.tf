terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"

      # The replica bucket lives in a second region: callers pass a second provider
      # configuration as `aws.replica` (it may be the same as `aws` while replication is off).
      configuration_aliases = [aws.replica]
    }
  }
}
