# The fleetbridge image: the same static binary `make build` produces, on distroless, as non-root.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
COPY plugin/ plugin/
COPY registrar/ registrar/
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /fleetbridge ./cmd/fleetbridge

FROM gcr.io/distroless/static:nonroot
COPY --from=build /fleetbridge /fleetbridge
USER 65532:65532
ENTRYPOINT ["/fleetbridge"]
