import type { PriceTable, RegionPrices } from './pricing.ts';

/**
 * The shipped S3 price table (USD). Bump `version` whenever a number changes, and say where it
 * came from: reports carry the version, so a CSV row can always be traced to the prices used.
 *
 * Source: the public Amazon S3 pricing page, https://aws.amazon.com/s3/pricing/ (tabs "Storage"
 * and "Requests & data retrievals"), US East (N. Virginia), as published in 2026 (request
 * prices as they stand since the November 2023 cut for Glacier Flexible Retrieval).
 * Storage-class rules (minimum durations, 128 KB minimum billable size, 40 KB archive overhead)
 * from https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-class-intro.html.
 * us-east-2, us-west-2 and eu-west-1 have the same S3 prices as us-east-1 for every item used
 * here. Other regions are not in the table: the analyzer says so and uses us-east-1, or give
 * your own table with --prices FILE (docs/cost.md).
 */
const KiB = 1024;

const usEast1: RegionPrices = {
  STANDARD: {
    storage: [{ upToGB: 50 * 1024, price: 0.023 }, { upToGB: 500 * 1024, price: 0.022 }, { price: 0.021 }],
    put: 0.005,
    get: 0.0004,
    transition: 0,
    retrievalPerGB: 0,
    minDays: 0,
    minBillableBytes: 0,
  },
  INTELLIGENT_TIERING: {
    // Frequent Access tier; objects not read for 30 days move to Infrequent (0.0125), for 90
    // days to Archive Instant (0.004). Objects under 128 KB stay Frequent and are not monitored.
    storage: [{ upToGB: 50 * 1024, price: 0.023 }, { upToGB: 500 * 1024, price: 0.022 }, { price: 0.021 }],
    tiers: [
      { afterDays: 30, price: 0.0125 },
      { afterDays: 90, price: 0.004 },
    ],
    monitoringPer1000Objects: 0.0025,
    put: 0.005,
    get: 0.0004,
    transition: 0.01,
    retrievalPerGB: 0,
    minDays: 0,
    minBillableBytes: 0,
  },
  STANDARD_IA: { storage: 0.0125, put: 0.01, get: 0.001, transition: 0.01, retrievalPerGB: 0.01, minDays: 30, minBillableBytes: 128 * KiB },
  ONEZONE_IA: { storage: 0.01, put: 0.01, get: 0.001, transition: 0.01, retrievalPerGB: 0.01, minDays: 30, minBillableBytes: 128 * KiB },
  GLACIER_IR: { storage: 0.004, put: 0.02, get: 0.01, transition: 0.02, retrievalPerGB: 0.03, minDays: 90, minBillableBytes: 128 * KiB },
  GLACIER: {
    // Flexible Retrieval. Restores: Standard tier $0.01/GB + $0.05 per 1,000 requests (Bulk is
    // free, Expedited $0.03/GB + $10 per 1,000).
    storage: 0.0036,
    put: 0.03,
    get: 0.0004,
    transition: 0.03,
    retrievalPerGB: 0.01,
    retrievalPer1000: 0.05,
    minDays: 90,
    minBillableBytes: 0,
    overheadClassBytes: 32 * KiB,
    overheadStandardBytes: 8 * KiB,
  },
  DEEP_ARCHIVE: {
    // Restores: Standard tier $0.02/GB + $0.10 per 1,000 (Bulk $0.0025/GB + $0.025 per 1,000).
    storage: 0.00099,
    put: 0.05,
    get: 0.0004,
    transition: 0.05,
    retrievalPerGB: 0.02,
    retrievalPer1000: 0.1,
    minDays: 180,
    minBillableBytes: 0,
    overheadClassBytes: 32 * KiB,
    overheadStandardBytes: 8 * KiB,
  },
};

export const PRICE_TABLE: PriceTable = {
  version: '2026-11-aws-1',
  date: '2026-11-26',
  currency: 'USD',
  source:
    'https://aws.amazon.com/s3/pricing/ (US East (N. Virginia); us-east-2, us-west-2 and eu-west-1 identical for these items) and ' +
    'https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-class-intro.html (minimum durations and sizes, archive overhead)',
  defaultRegion: 'us-east-1',
  regions: {
    'us-east-1': usEast1,
    'us-east-2': usEast1,
    'us-west-2': usEast1,
    'eu-west-1': usEast1,
  },
};
