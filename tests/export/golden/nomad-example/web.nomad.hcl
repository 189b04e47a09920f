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
      min_healthy_time = "60s"
      healthy_deadline = "180s"
      progress_deadline = "240s"
    }

    restart {
      attempts = 3
      mode = "delay"
    }

    network {
      mode = "bridge"

      port "p80" {
        to = 80
        static = 8080
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
        interval = "10s"
        timeout = "3s"
      }
    }

    task "web" {
      driver = "docker"

      config {
        image = "dispenser-example/web:latest"
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

        mount {
          type = "bind"
          source = "local/html"
          target = "/www"
          readonly = true
        }
      }

      template {
        data = "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Dispenser example</title></head>\n<body>\n  <h1>It works</h1>\n  <p>This page comes from <code>example/web/html/index.html</code>, served by the\n  <code>web</code> service that Dispenser runs from <code>example/web/service.toml</code>.</p>\n  <p>Edit the file and reload this page: the folder is bind-mounted.</p>\n</body>\n</html>\n"
        destination = "local/html/index.html"
        left_delimiter = "[[dispenser-none[["
        right_delimiter = "]]dispenser-none]]"
      }

      resources {
        memory = 64
        cpu = 500
      }
    }
  }
}
