# The API (and the embedded-database default, though in this image DATABASE_URL points at the
# compose file's PostgreSQL). Runs from TypeScript sources with swc, like `npm run` does.
# The results page (/ui) is built with the dev dependencies (Vite, Preact, uPlot) in a stage of its
# own; the image keeps only its static files.
FROM node:20-bookworm-slim AS web
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY apps/web ./apps/web
RUN npm run build:web

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# The tfjs native packages are optional and need a download at install time; the API never trains.
RUN npm ci --omit=optional --no-audit --no-fund
COPY tsconfig.json .swcrc ./
COPY bin ./bin
COPY libs ./libs
COPY apps ./apps
COPY --from=web /app/apps/web/dist ./apps/web/dist
ENV HOST=0.0.0.0 PORT=3000
EXPOSE 3000
CMD ["node", "bin/run-ts.js", "apps/api/src/main.ts"]
