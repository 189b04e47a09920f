job "api" {
  type = "service"

  meta {
    dispenser_instance = "export-stack"
  }

  group "api" {
    count = 1

    update {
      max_parallel = 1
      canary = 1
      auto_promote = true
      auto_revert = true
      health_check = "checks"
      min_healthy_time = "5s"
      healthy_deadline = "35s"
      progress_deadline = "95s"
    }

    restart {
      attempts = 3
      mode = "delay"
    }

    network {
      mode = "bridge"

      port "p8000" {
        to = 8000
      }
    }

    service {
      name = "api"
      port = "p8000"
      provider = "nomad"
    }

    task "api" {
      driver = "docker"
      user = "1000:1000"

      config {
        image = "registry.example.test/api:2"
        args = [
          "serve",
          "--port",
          "8000"
        ]
        ports = [
          "p8000"
        ]

        logging {
          type = "json-file"

          config {
            max-file = "3"
            max-size = "10m"
          }
        }
      }

      env {
        DB_URL = "postgres://db:5432/app"
      }

      template {
        data = "{{ with nomadVar \"nomad/jobs/api\" }}\nAPI_TOKEN={{ .api_token }}\nDB_PASSWORD={{ .db_password }}\n{{ end }}\n"
        destination = "secrets/dispenser.env"
        env = true
      }
    }
  }
}
