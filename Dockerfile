# syntax=docker/dockerfile:1
# s3backup CLI image: `docker run --rm IMAGE backup /source --repo s3://BUCKET`.

# ---------------------------------------------------------------- build: TypeScript -> dist/
FROM node:24-slim AS build
WORKDIR /app
# --ignore-scripts: `prepare` would compile before src/ is copied, and the `node` devDependency
# would fetch a second Node.js binary; the image's own Node 24 runs tsc.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY scripts/copy-assets.mjs ./scripts/
COPY src ./src
RUN npm run build

# ---------------------------------------------------------------- runtime: no compilers, no dev deps
FROM node:24-slim AS runtime
ENV NODE_ENV=production
# glibc's malloc, told to keep fewer arenas (bin/s3backup.js sets it when unset; and for backup
# alone MALLOC_MMAP_THRESHOLD_, which would slow a restore).
ENV MALLOC_ARENA_MAX=2
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts \
  && npm cache clean --force \
  && mkdir -p /var/log/s3backup /reports \
  && chown node:node /var/log/s3backup /reports
COPY --from=build /app/dist ./dist
COPY bin ./bin
# The base image's unprivileged user (uid 1000).
USER node
ENTRYPOINT ["node", "--max-semi-space-size=4", "/app/bin/s3backup.js"]
CMD ["--help"]
