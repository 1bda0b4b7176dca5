/* hello-svc: a tiny HTTP service for ferry's demo. It answers every request with the machine it
 * runs on, logs one line naming its architecture at start, and has a --self-test mode that
 * `ferry test` runs under emulation before anything ships. Static, no dependencies. */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }

int main(int argc, char **argv) {
  struct utsname u;
  uname(&u);
  if (argc > 1 && strcmp(argv[1], "--self-test") == 0) {
    printf("self-test ok on %s\n", u.machine);
    return 0;
  }
  const char *port_s = getenv("PORT");
  char *end = NULL;
  long pl = port_s ? strtol(port_s, &end, 10) : 8080;
  int port = (port_s && (*end || pl < 1 || pl > 65535)) ? 8080 : (int)pl;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_ANY)};
  /* Several emulated boards on one laptop share its ports: take the next free one. */
  int tries = 0;
  while (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && tries++ < 20) sa.sin_port = htons((uint16_t)++port);
  if (fd < 0 || listen(fd, 16) != 0) {
    perror("hello-svc: listen");
    return 1;
  }
  printf("hello-svc %s listening on :%d, running on %s\n", getenv("VERSION") ? getenv("VERSION") : "", port, u.machine);
  fflush(stdout);
  struct sigaction act = {.sa_handler = on_term};
  sigaction(SIGTERM, &act, NULL);
  while (!stop) {
    int c = accept(fd, NULL, NULL);
    if (c < 0) continue;
    char buf[1024], body[256], resp[512];
    ssize_t got = read(c, buf, sizeof buf);
    (void)got;
    int bl = snprintf(body, sizeof body, "hello from %s\n", u.machine);
    int rl = snprintf(resp, sizeof resp, "HTTP/1.0 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s", bl, body);
    if (write(c, resp, (size_t)rl) < 0) perror("hello-svc: write");
    close(c);
  }
  return 0;
}
