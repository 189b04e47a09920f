job "web" {
  type = "service"

  meta {
    dispenser_instance = "example"
  }

  group "web" {
    count = 1

    update {
      max_parallel = 1
      canary = 1
      auto_promote = true
      auto_revert = true
      health_check = "checks"
      min_healthy_time = "5s"
      healthy_deadline = "125s"
      progress_deadline = "185s"
    }

    restart {
      attempts = 3
      mode = "delay"
    }

    network {
      mode = "bridge"

      port "p80" {
        to = 80
      }
    }

    service {
      name = "web"
      port = "p80"
      provider = "consul"
      tags = [
        "traefik.enable=true",
        "traefik.http.routers.web.rule=Host(`localhost`) && PathPrefix(`/`)"
      ]

      check {
        type = "script"
        task = "web"
        command = "wget"
        args = [
          "-q",
          "-O",
          "/dev/null",
          "http://127.0.0.1/"
        ]
        interval = "1s"
        timeout = "1s"
      }
    }

    task "web" {
      driver = "docker"

      config {
        image = "127.0.0.1:5055/dispenser-example/web:latest"
        ports = [
          "p80"
        ]

        logging {
          type = "json-file"

          config {
            max-file = "3"
            max-size = "10m"
          }
        }
      }

      resources {
        memory = 64
        cpu = 500
      }
    }
  }
}
