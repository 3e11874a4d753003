module github.com/idemq/idemq/consumer/amqp

go 1.26.8

require (
	github.com/idemq/idemq v0.0.0
	github.com/rabbitmq/amqp091-go v1.16.0
	github.com/stretchr/testify v1.12.1
)

require (
	github.com/cenkalti/backoff/v4 v4.3.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)

replace github.com/idemq/idemq => ../..
