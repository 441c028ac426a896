package grpcresolver_test

import (
	"log"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sagaproject/saga/pkg/client/grpcresolver"
)

// A client spreads its calls over the instances of "web" tagged v2, as
// Saga has them at each moment (docs/integrations.md shows the same).
func ExampleNewBuilder() {
	secret := os.Getenv("SAGA_TOKEN")
	conn, err := grpc.NewClient("saga:///web?tag=v2",
		grpc.WithResolvers(grpcresolver.NewBuilder(grpcresolver.WithToken(secret))),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	// Make calls on conn with the service's generated client.
}
