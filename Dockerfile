# The fleetbridge image: the same static binary `make build` produces (CGO_ENABLED=0, -trimpath,
# -ldflags "-s -w"), on distroless as non-root. Name the distroless "static:nonroot" image of the
# registry or mirror you use:
#   docker build --build-arg RUNTIME_IMAGE=<registry>/distroless/static:nonroot -t fleetbridge .
ARG GO_IMAGE=golang:1.26
ARG RUNTIME_IMAGE

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
COPY plugin/ plugin/
COPY registrar/ registrar/
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /fleetbridge ./cmd/fleetbridge

FROM ${RUNTIME_IMAGE}
COPY --from=build /fleetbridge /fleetbridge
USER 65532:65532
ENTRYPOINT ["/fleetbridge"]
